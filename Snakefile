# Iterated Amplification study: one DAG of iteration stages per (task, method, seed).
#
#   snakemake --cores all                                   # the default study (config/config.yaml)
#   snakemake --cores all --configfile config/smoke.yaml    # another config REPLACES config/config.yaml
#   snakemake --cores all --config iterations=4             # key=value overrides on top
#   snakemake -n                                            # show what would run
#
# This file only loads and validates the config and includes the rules; the rules are in
# workflow/rules/, the schema in workflow/schemas/, the default profile in workflow/profiles/default/.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# iteration i depends on i-1: a long chain recurses deeply while the DAG is built
sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))

# the package of this checkout, importable here and in every job, installed or not
_SRC = os.path.join(workflow.basedir, "src")
if os.path.isdir(_SRC):
    if _SRC not in sys.path:
        sys.path.insert(0, _SRC)
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p))
# idle OpenMP threads sleep instead of spinning: two jobs on two cores otherwise slow down 5x
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


include: "workflow/rules/common.smk"
include: "workflow/rules/iteration.smk"
include: "workflow/rules/study.smk"


rule all:
    """The whole study: every run's final metrics, the summary tables and the figures."""
    default_target: True
    input:
        final_metrics,
        rules.summary.output,
        rules.figures.output,
        track_markers,
