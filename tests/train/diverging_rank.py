"""``jobs/train.py`` with one broken rank, for tests/train/test_horovod.py to run under
``horovodrun``: after every allreduce, rank 1 adds 1e-3 to its averaged gradients, so its
weights drift from rank 0's while both keep stepping on the same batches."""

import sys

import torch

from bigearth_spark.train import launch, loop

_start = loop._start


def _start_with_a_diverging_rank(cfg: loop.TrainConfig, comm) -> loop._Run:
    run = _start(cfg, comm)
    if run.rank == 1:
        synchronize = run.opt.synchronize

        def perturbed() -> None:
            synchronize()
            with torch.no_grad():
                for group in run.opt.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.add_(1e-3)

        run.opt.synchronize = perturbed
    return run


loop._start = _start_with_a_diverging_rank

if __name__ == "__main__":
    sys.exit(launch.main())
