"""The study configuration: load, validate against workflow/schemas/config.schema.yaml, fill in
the schema's defaults, and resolve one task's settings.

    cfg = load_config("config/config.yaml", overrides=["iterations=2", "defaults.distill.lr=1e-4"])
    settings = task_settings(cfg, "permutation")     # defaults deep-merged with per_task

Every problem is one `ConfigError` line naming the key, e.g.
    config: defaults.distill.lr: 'x' is not of type 'number'
    config: unknown key 'foo'
"""
from __future__ import annotations

import copy
import os
import re
from functools import lru_cache

import yaml

from . import hparams

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "workflow", "schemas", "config.schema.yaml")


class ConfigError(ValueError):
    """An invalid configuration; the message is one line that names the offending key."""


# ---- YAML ----------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1 insists on `1.0e-5`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def read_yaml(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config: no such file {path}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config: {path}{line}: invalid YAML: {getattr(e, 'problem', None) or e}") from None


@lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON schema, from the source tree (or, for a non-editable install, the working directory)."""
    for path in (os.path.normpath(SCHEMA_PATH), os.path.join("workflow", "schemas", "config.schema.yaml")):
        if os.path.exists(path):
            return read_yaml(path)
    raise ConfigError(f"config: schema not found at {os.path.normpath(SCHEMA_PATH)}")


# ---- merging and overrides -----------------------------------------------------------------------
deep_merge = hparams.deep_merge


def parse_override(item: str) -> dict:
    """'a.b.c=value' -> {'a': {'b': {'c': value}}}, the value read as YAML ('[1, 2]', '1e-4', 'null')."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"config: override {item!r} is not of the form key.path=value")
    out: dict = yaml.load(value, Loader=_Loader) if value.strip() else ""
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def retype(value):
    """Re-read the string leaves of a parsed override as YAML: Snakemake's `--config k=v` parses
    nested values (`seeds=[0,1]`, `defaults={distill: {lr: 1e-4}}`) into strings only."""
    if isinstance(value, dict):
        return {k: retype(v) for k, v in value.items()}
    if isinstance(value, list):
        return [retype(v) for v in value]
    if isinstance(value, str):
        try:
            return yaml.load(value, Loader=_Loader) if value.strip() else value
        except yaml.YAMLError:
            return value
    return value


def _overrides_dict(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return overrides
    merged: dict = {}
    for item in overrides:
        merged = deep_merge(merged, parse_override(item))
    return merged


# ---- validation ----------------------------------------------------------------------------------
def _key_path(parts) -> str:
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _one_line(err) -> str:
    """A jsonschema error as one line that names the key."""
    path = _key_path(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = sorted((err.schema.get("properties") or {}))
        extra = sorted(k for k in err.instance if k not in known)
        if extra:
            key = f"{path}.{extra[0]}" if path else str(extra[0])
            return f"unknown key '{key}'" + (f"; known keys there: {', '.join(known)}" if known else "")
    if "propertyNames" in err.schema_path:  # e.g. per_task.<not a task>
        key = f"{path}.{err.instance}" if path else str(err.instance)
        return f"unknown key '{key}': {err.message}"
    return f"{path or '(top level)'}: {err.message}"


def _fill_defaults(sch: dict, inst, root: dict):
    """Fill missing keys from `default:` along `properties` (following local $refs), in place."""
    while "$ref" in sch:
        ref = sch["$ref"]
        target = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        sch = {**target, **{k: v for k, v in sch.items() if k != "$ref"}}
    if not isinstance(inst, dict):
        return inst
    for key, sub in (sch.get("properties") or {}).items():
        if key not in inst and "default" in sub:
            inst[key] = copy.deepcopy(sub["default"])
        if key in inst:
            _fill_defaults(sub, inst[key], root)
    return inst


def _check_task_params(cfg: dict) -> None:
    """Build every configured task with its params, so a bad size parameter fails here; and
    reject settings that are valid one by one but not together."""
    from .tasks import TASKS, make_task

    for task in cfg["tasks"]:
        settings = task_settings(cfg, task)
        x = settings["x"]
        if x.get("token_encoder") and x.get("match_bias"):
            raise ConfigError(f"config: x of task {task}: token_encoder and match_bias cannot both be true "
                              "(the match bias is defined between whole facts)")
        if x.get("match_bias_init") and not x.get("match_bias"):
            raise ConfigError(f"config: x of task {task}: match_bias_init is set but match_bias is false "
                              "(the initial weight is the match bias's)")
        budget = settings["budget"]
        if budget.get("review") and not budget.get("focus"):
            raise ConfigError(f"config: budget of task {task}: review is true, but focus is 0 "
                              "(review spends the focus share of the H calls on this iteration's own targets)")
        if task not in TASKS:  # not registered in this checkout: its stages will say so
            continue
        params = settings["params"]
        try:
            built = make_task(task, **params)
        except Exception as e:  # TaskError, TypeError...
            where = f"per_task.{task}.params" if (cfg["per_task"].get(task) or {}).get("params") else "defaults.params"
            raise ConfigError(f"config: {where}: {str(e).splitlines()[0]}") from None
        share = settings["hprime_train"].get("counterfactual")
        if share and cfg.get("human", "scripted") != "scripted":
            raise ConfigError(f"config: hprime_train of task {task}: counterfactual copies are the scripted H's "
                              f"transcripts, so they need human: scripted (got {cfg['human']})")
        if share and not built.counterfactual:
            raise ConfigError(f"config: hprime_train of task {task}: counterfactual is {share}, "
                              f"but {task} gives no counterfactual sub-answers (only union find does)")
        if settings["hprime_train"].get("rename") and not built.renamable:
            raise ConfigError(f"config: hprime_train of task {task}: rename is true, but {task}'s H is not "
                              "checked to ignore which name is which (only union find's is)")


def validate(raw, source: str = "config") -> dict:
    """A complete, validated copy of a config dict (defaults filled in); ConfigError otherwise."""
    import jsonschema

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {source}: the top level must be a mapping, got {type(raw).__name__}")
    sch = schema()
    validator = jsonschema.Draft202012Validator(sch)
    err = jsonschema.exceptions.best_match(validator.iter_errors(raw))
    if err is not None:
        raise ConfigError(f"config: {_one_line(err)}")
    cfg = _fill_defaults(sch, copy.deepcopy(raw), sch)
    _check_task_params(cfg)
    return cfg


def load_config(path, overrides=None) -> dict:
    """Read one YAML file (or a list, later files deep-merged over earlier ones), apply
    `overrides` (a dict, or 'key.path=value' strings) and validate; defaults filled in."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    raw: dict = {}
    for p in paths:
        data = read_yaml(os.fspath(p))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config: {p}: the top level must be a mapping")
        raw = deep_merge(raw, data)
    raw = deep_merge(raw, _overrides_dict(overrides))
    return validate(raw, source=", ".join(map(os.fspath, paths)) or "config")


def task_settings(cfg: dict, task: str) -> dict:
    """The settings of one task: hparams defaults < cfg['defaults'] < cfg['per_task'][task]."""
    return hparams.task_settings(cfg, task)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100)


def save_resolved(cfg: dict, path: str) -> bool:
    """Write the resolved config atomically; leave the file (and its mtime) alone when it already
    holds the same text. Returns whether it wrote."""
    text = "# resolved configuration (defaults filled in), written by the Snakefile; do not edit\n" + dump(cfg)
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return True
