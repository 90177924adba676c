# Study-level rules: the test sets as one target, the summary tables, the figures.


rule testsets:
    """All fixed test sets of the study (the target of the DVC `testsets` stage)."""
    input:
        expand(paths.testset_path(DATA, "{task}"), task=TASKS),


rule summary:
    """Tabulate all iterations' metrics: per run (summary.csv/json), per iteration (metrics.csv), curves."""
    input:
        metrics=all_metrics,
    output:
        summary=os.path.join(RESULTS, "summary.csv"),
        metrics=os.path.join(RESULTS, "metrics.csv"),
        summary_json=os.path.join(RESULTS, "summary.json"),
        curves=expand(os.path.join(RESULTS, "curves", "{task}.csv"), task=TASKS),
    log:
        os.path.join(LOGS, "study", "summary.log"),
    threads: 1
    shell:
        f"{AMP} study summary --config {shlex.quote(RESOLVED)} > {{log}} 2>&1"


rule track:
    """Log one run's iterations to MLflow at once (mlflow.log: run); a tracking failure only warns."""
    input:
        metrics=lambda w: [metrics_file(w.task, w.method, int(w.seed), i) for i in range(ITERS[w.task])],
    output:
        marker=paths.track_marker(RESULTS, "{task}", "{method}", "{seed}"),
    log:
        os.path.join(LOGS, "{task}", "{method}", "seed{seed}", "track.log"),
    threads: 1
    shell:
        f"{AMP} study sync-mlflow --config {shlex.quote(RESOLVED)} --task {{wildcards.task}} --method {{wildcards.method}} "
        f"--seed {{wildcards.seed}} --marker {{output.marker}} --warn-only > {{log}} 2>&1"


FIGURES = ["accuracy_vs_steps", "accuracy_by_class", "teacher_vs_targets", "hcalls_vs_accuracy"]


rule figures:
    """Draw the study's figures (PNG) from every iteration's metrics."""
    input:
        metrics=all_metrics,
    output:
        **{
            name: report(os.path.join(RESULTS, "figures", f"{name}.png"), caption=f"../report/{name}.rst",
                         category="Figures", labels={"figure": name})
            for name in FIGURES
        },
    log:
        os.path.join(LOGS, "study", "figures.log"),
    threads: 1
    shell:
        f"{AMP} study figures --config {shlex.quote(RESOLVED)} --out {shlex.quote(os.path.join(RESULTS, 'figures'))} > {{log}} 2>&1"
