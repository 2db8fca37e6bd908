"""The default model loads once, also when several threads make the first call at once."""

import threading
import time

import lverse
import lverse.pipeline


def test_four_threads_load_the_default_model_once(monkeypatch):
    real_load = lverse.pipeline.load
    loads = []

    def counting_load(*args, **kwargs):
        loads.append(threading.get_ident())
        time.sleep(0.2)  # a slow disk: the other threads arrive while this one loads
        return real_load(*args, **kwargs)

    monkeypatch.setattr(lverse.pipeline, "_default", None)
    monkeypatch.setattr(lverse.pipeline, "load", counting_load)
    start = threading.Barrier(4)
    captions, errors = [None] * 4, []

    def work(i):
        try:
            start.wait()
            captions[i] = lverse.caption("examples/images/scene_0.png", candidates=0)
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(loads) == 1, f"the default model was loaded {len(loads)} times"
    assert isinstance(captions[0], str) and captions == [captions[0]] * 4
    assert lverse.pipeline._default is not None
