"""Loading trained models back from checkpoints (for stages, evaluation and the web page)."""
from __future__ import annotations

from .hparams import HPrimeConfig, XConfig
from .hprime import HPrime
from .tasks import make_task
from .train import load_checkpoint
from .xmodel import XModel


def task_of(sd: dict):
    return make_task(sd["task"]["name"], **sd["task"]["params"])


def load_x(path: str, device: str = "cpu", teacher: bool = True) -> XModel:
    """X from a checkpoint: the teacher (weight average, the evaluated model) or the student."""
    sd = load_checkpoint(path, device)
    if sd.get("kind") != "x":
        raise ValueError(f"{path} is not an X checkpoint")
    model = XModel.for_task(task_of(sd), XConfig(**sd["xcfg"])).to(device)
    model.load_state_dict(sd["teacher" if teacher else "model"])
    return model.eval()


def load_hprime(path: str, device: str = "cpu") -> HPrime:
    sd = load_checkpoint(path, device)
    if sd.get("kind") != "hprime":
        raise ValueError(f"{path} is not an H' checkpoint")
    model = HPrime.for_task(task_of(sd), HPrimeConfig(**sd["hcfg"])).to(device)
    model.load_state_dict(sd["model"])
    return model.eval()
