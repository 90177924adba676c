"""Run the scripted H on one question with sub-answers given as texts (shared by task tests)."""
import numpy as np

from amplification.human import amplify_h


def script(task, q, replies):
    """Run H on one question with scripted sub-answers (texts); -> (subquestions, answer)."""
    names = {task.decode(task.encode_names(k)): k for k in range(task.n_names)}

    def tok(text):
        rec = np.zeros(task.answer_length, dtype=np.int64)
        if text in names:
            rec[:] = task.encode_names(names[text])
        elif text != "?":
            rec[0] = task.vocab.labels.index(text)
        return rec
    asked, it = [], iter(replies)

    def answerer(c, qs):
        asked.extend(task.decode(x) for x in qs)
        return np.stack([tok(next(it)) for _ in qs])
    tr = amplify_h(task, np.zeros(1, int), q[None], answerer, None)
    return asked, task.decode(tr.answers[0])
