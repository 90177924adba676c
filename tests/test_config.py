"""The study configuration: schema completeness, defaults = hparams, one-line errors naming the key."""
import os

import pytest
import yaml

from amplification import hparams
from amplification.config import (ConfigError, load_config, parse_override, retype, save_resolved, schema,
                                  task_settings, validate)

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = ["config/config.yaml", "config/paper.yaml", "config/smoke.yaml", "config/union_find_depth1.yaml",
           "config/union_find_no_review.yaml"]


def _resolve(sch, root):
    while "$ref" in sch:
        target = root
        for part in sch["$ref"].lstrip("#/").split("/"):
            target = target[part]
        sch = {**target, **{k: v for k, v in sch.items() if k != "$ref"}}
    return sch


def _walk(sch, root, path=""):
    """(key path, schema) of every documented key."""
    sch = _resolve(sch, root)
    for key, sub in (sch.get("properties") or {}).items():
        yield f"{path}{key}", _resolve(sub, root)
        yield from _walk(sub, root, f"{path}{key}.")


def test_every_key_has_type_description_default():
    sch = schema()
    keys = list(_walk(sch, sch))
    assert len(keys) > 50
    for path, sub in keys:
        assert "type" in sub or "enum" in sub, f"{path}: no type"
        assert sub.get("description"), f"{path}: no description"
        assert "default" in sub, f"{path}: no default"


def test_unknown_keys_forbidden_everywhere_but_params():
    sch = schema()

    def objects(s, path):
        s = _resolve(s, sch)
        if s.get("type") == "object" and "properties" in s:
            yield path, s
        for k, sub in (s.get("properties") or {}).items():
            yield from objects(sub, f"{path}.{k}" if path else k)

    found = list(objects(sch, ""))
    assert len(found) >= 10
    for path, s in found:
        assert s.get("additionalProperties") is False, path


def test_schema_defaults_equal_hparams():
    """One place of truth: the schema's `defaults:` section repeats hparams.defaults()."""
    assert load_config([], {})["defaults"] == hparams.defaults()
    sch = schema()
    sections = sch["$defs"]["task_settings"]["properties"]
    assert set(sections) == set(hparams.defaults())


def test_schema_top_level_defaults_are_the_contract():
    cfg = validate({})
    assert cfg["name"] == "default" and cfg["results_dir"] == "results" and cfg["data_dir"] == "data"
    assert cfg["tasks"] == ["permutation", "assignments", "wildcard", "shortest_path", "union_find"]
    assert cfg["methods"] == ["amplification", "supervised"] and cfg["seeds"] == [0]
    assert cfg["iterations"] == 8 and cfg["device"] == "auto" and cfg["threads"] == 1
    assert cfg["human"] == "scripted" and cfg["per_task"] == {}
    assert cfg["mlflow"] == {"experiment": "iterated-amplification", "tracking_uri": None, "enabled": True,
                            "log": "iteration"}
    assert cfg["test_set"] == {"contexts": 64, "questions_per_context": 16, "seed": 1000003}


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_are_valid(path):
    cfg = load_config(os.path.join(ROOT, path))
    assert cfg["name"] == os.path.splitext(os.path.basename(path))[0].replace("config", "default")
    for task in cfg["tasks"]:
        ts = task_settings(cfg, task)
        assert set(ts) == set(hparams.defaults())
        for section in hparams.SECTIONS:
            hparams.build(section, ts[section])  # every value fits the dataclass


def test_paper_config_is_paper_scale():
    cfg = load_config(os.path.join(ROOT, "config/paper.yaml"))
    x, d = cfg["defaults"]["x"], cfg["defaults"]["distill"]
    assert (x["width"], x["heads"], x["embed"], x["enc_layers"], x["dec_layers"]) == (512, 8, 100, 6, 3)
    assert d["lr"] == 1e-5 and d["batch_contexts"] == 50 and d["steps"] * cfg["iterations"] == 400_000
    assert cfg["defaults"]["budget"]["initial"] == 500 and cfg["device"] == "cuda"
    assert cfg["defaults"]["params"] == {} and cfg["per_task"] == {}  # the tasks' 64-name defaults


def test_configs_do_not_share_output_folders():
    cfgs = [load_config(os.path.join(ROOT, p)) for p in CONFIGS]
    assert len({c["results_dir"] for c in cfgs}) == len(cfgs)
    assert len({c["data_dir"] for c in cfgs}) == len(cfgs)
    assert len({c["name"] for c in cfgs}) == len(cfgs)


@pytest.mark.parametrize("override, message", [
    (["foo=1"], "config: unknown key 'foo'"),
    (["defaults.distill.lrr=1"], "config: unknown key 'defaults.distill.lrr'"),
    (["mlflow.server=x"], "config: unknown key 'mlflow.server'"),
    (["defaults.distill.lr=x"], "config: defaults.distill.lr: 'x' is not of type 'number'"),
    (["iterations=two"], "config: iterations: 'two' is not of type 'integer'"),
    (["iterations=0"], "config: iterations: 0 is less than the minimum of 1"),
    (["tasks=[permutation, sorting]"], "config: tasks[1]: 'sorting' is not one of"),
    (["per_task.sorting={}"], "config: unknown key 'per_task.sorting'"),
    (["per_task.permutation.x.widht=3"], "config: unknown key 'per_task.permutation.x.widht'"),
    (["device=tpu"], "config: device: 'tpu' is not one of"),
    (["seeds=[0, 0]"], "config: seeds: [0, 0] has non-unique elements"),
    (["per_task.permutation.params.log_iters=1"], "config: per_task.permutation.params: log_iters must be"),
    (["defaults.params.bogus=3"], "config: defaults.params:"),
    (["per_task.permutation.params.nchars=true"], "config: per_task.permutation.params: nchars must be an integer"),
    (["per_task.shortest_path.params.check_step=3"], "config: per_task.shortest_path.params: check_step must be true or false"),
    (["tasks=[wildcard]", "defaults.x.match_bias=true", "per_task.wildcard.x.token_encoder=true"],
     "config: x of task wildcard: token_encoder and match_bias cannot both be true"),
    (["tasks=[wildcard]", "per_task.wildcard.x.match_bias_init=3"],
     "config: x of task wildcard: match_bias_init is set but match_bias is false"),
    (["per_task.union_find.amplify.levels=0"], "config: per_task.union_find.amplify.levels: 0 is less than the minimum of 1"),
    (["defaults.amplify.levels=2.5"], "config: defaults.amplify.levels: 2.5 is not of type 'integer'"),
    (["defaults.budget.focus_by=random"], "config: defaults.budget.focus_by: 'random' is not one of"),
    (["defaults.budget.focus=0.95"], "config: defaults.budget.focus: 0.95 is greater than the maximum of 0.9"),
    (["defaults.budget.review=3"], "config: defaults.budget.review: 3 is not of type 'boolean'"),
    (["defaults.budget.review=true"], "config: budget of task permutation: review is true, but focus is 0"),
    (["defaults.distill.lr_min=2"], "config: defaults.distill.lr_min: 2 is greater than the maximum of 1"),
    (["defaults.amplify.min_confidence=1"], "config: defaults.amplify.min_confidence: 1 is greater than or equal to the maximum of 1"),
    (["defaults.amplify.confidence_of=leaves"], "config: defaults.amplify.confidence_of: 'leaves' is not one of"),
    (["defaults.amplify.deep_transcripts=1.5"], "config: defaults.amplify.deep_transcripts: 1.5 is greater than the maximum of 1"),
    (["defaults.hprime_train.rename=true"], "config: hprime_train of task permutation: rename is true, but"),
    (["defaults.hprime_train.counterfactual=0.5"], "config: hprime_train of task permutation: counterfactual is 0.5, but"),
    (["tasks=[union_find]", "human=recorded", "per_task.union_find.hprime_train.counterfactual=0.5"],
     "config: hprime_train of task union_find: counterfactual copies are the scripted H's transcripts"),
    (["defaults.hprime_train.counterfactual=1.5"], "config: defaults.hprime_train.counterfactual: 1.5 is greater than the maximum of 1"),
    (["defaults.hprime_train.rename=maybe"], "config: defaults.hprime_train.rename: 'maybe' is not of type 'boolean'"),
    (["per_task.union_find.schedule.iterations=0"],
     "config: per_task.union_find.schedule.iterations: 0 is less than the minimum of 1"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config([], override)
    msg = str(e.value)
    assert msg.startswith(message), msg
    assert "\n" not in msg


def _layered_over_the_default_study(extra: str):
    """(union find's settings with `extra` layered over config/config.yaml, without it). Also checks
    what every such file must keep: the other tasks' settings, and folders of its own."""
    base = load_config(os.path.join(ROOT, "config/config.yaml"))
    cfg = load_config([os.path.join(ROOT, p) for p in ("config/config.yaml", extra)])
    for task in ("permutation", "assignments", "wildcard", "shortest_path"):
        assert task_settings(cfg, task) == task_settings(base, task)
    assert cfg["results_dir"] != base["results_dir"] and cfg["data_dir"] != base["data_dir"]
    return task_settings(cfg, "union_find"), task_settings(base, "union_find")


def test_union_find_depth1_layers_over_the_default_study():
    uf, uf_base = _layered_over_the_default_study("config/union_find_depth1.yaml")
    assert (uf_base["amplify"]["levels"], uf_base["budget"]["min_calls"], uf_base["schedule"]["iterations"]) == (2, 1000, 16)
    assert (uf["amplify"]["levels"], uf["budget"]["min_calls"], uf["schedule"]["iterations"]) == (1, 200, 14)
    assert (uf["budget"]["focus"], uf["budget"]["review"]) == (0.0, False)  # H's calls as then: random questions
    assert uf["params"] == uf_base["params"]  # the default study's sizes


def test_union_find_no_review_layers_over_the_default_study():
    uf, uf_base = _layered_over_the_default_study("config/union_find_no_review.yaml")
    assert (uf_base["budget"]["focus"], uf_base["budget"]["focus_by"], uf_base["budget"]["review"]) == (0.5, "uncertain", True)
    assert (uf["budget"]["focus"], uf["budget"]["review"]) == (0.0, False)  # the study of record's union find
    # everything else of union find's default settings is kept (start 4, depth 2, 1,000 transcripts)
    for section in ("params", "amplify", "schedule", "distill", "x", "curriculum"):
        assert uf[section] == uf_base[section], section
    assert uf["budget"]["min_calls"] == uf_base["budget"]["min_calls"] == 1000


def test_a_task_sets_its_own_iterations():
    from amplification.hparams import iterations

    cfg = load_config([], ["iterations=5", "per_task.union_find.schedule.iterations=7"])
    assert [iterations(cfg, t) for t in ("permutation", "union_find")] == [5, 7]
    cfg = load_config([], ["iterations=5", "defaults.schedule.iterations=6", "per_task.union_find.schedule.iterations=7"])
    assert [iterations(cfg, t) for t in ("permutation", "union_find")] == [6, 7]


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [a\n")
    with pytest.raises(ConfigError, match="bad.yaml line .*invalid YAML"):
        load_config(str(bad))
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(lst))


def test_yaml_floats_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("defaults: {distill: {lr: 1e-4}}\nper_task: {wildcard: {distill: {steps: 7}}}\n")
    cfg = load_config(str(p), ["defaults.hprime_train.lr=3e-5", "seeds=[1, 2]"])
    assert cfg["defaults"]["distill"]["lr"] == 1e-4
    assert cfg["defaults"]["hprime_train"]["lr"] == 3e-5
    assert cfg["seeds"] == [1, 2]
    assert parse_override("mlflow.tracking_uri=null") == {"mlflow": {"tracking_uri": None}}
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("iterations")
    # Snakemake's --config hands nested values over as strings
    assert retype({"defaults": {"distill": {"lr": "1e-4"}}, "seeds": ["0", "1"], "name": "x"}) == \
        {"defaults": {"distill": {"lr": 1e-4}}, "seeds": [0, 1], "name": "x"}


def test_task_settings_deep_merge():
    cfg = load_config([], {"defaults": {"distill": {"steps": 10}},
                           "per_task": {"wildcard": {"distill": {"lr": 0.5}, "params": {"length": 3}}}})
    w, p = task_settings(cfg, "wildcard"), task_settings(cfg, "permutation")
    assert w["distill"]["steps"] == 10 and w["distill"]["lr"] == 0.5 and w["params"] == {"length": 3}
    assert p["distill"]["steps"] == 10 and p["distill"]["lr"] == 1e-3 and p["params"] == {}
    assert w["distill"]["replay_iters"] == hparams.DistillConfig().replay_iters


def test_later_files_override_earlier(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("iterations: 3\ndefaults: {x: {width: 8}}\n")
    b.write_text("defaults: {x: {heads: 2}}\n")
    cfg = load_config([str(a), str(b)])
    assert cfg["iterations"] == 3 and cfg["defaults"]["x"]["width"] == 8 and cfg["defaults"]["x"]["heads"] == 2


def test_save_resolved_roundtrip_and_idempotent(tmp_path):
    cfg = load_config(os.path.join(ROOT, "config/smoke.yaml"))
    p = str(tmp_path / "sub" / "resolved.yaml")
    assert save_resolved(cfg, p) is True
    mtime = os.stat(p).st_mtime_ns
    assert save_resolved(cfg, p) is False  # same content: untouched
    assert os.stat(p).st_mtime_ns == mtime
    assert load_config(p) == cfg
    assert yaml.safe_load(open(p))["name"] == "smoke"
    assert not [f for f in os.listdir(os.path.dirname(p)) if ".tmp" in f]
