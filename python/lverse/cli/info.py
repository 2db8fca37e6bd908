"""``python -m lverse info``: versions, devices and threads."""

import platform


def register(sub):
    p = sub.add_parser("info", help="print lverse, torch and CUDA versions, devices and threads")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    import lverse
    from lverse import _native

    rows = [
        ("lverse", lverse.__version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("CUDA (torch build)", torch.version.cuda or "none"),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        rows.append((f"cuda:{i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    rows += [
        ("CPU", f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                f"{_native.rayon_threads()} rayon threads"),
        ("native module", _native.__file__),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
