#!/usr/bin/env bash
# The GPU figures BENCHMARKS.md still lacks: seven parts, one call of the device tool each (each under 10 min).
# The device machine has torch but not skorch/optuna/captum and no network: carry their wheels
# (.whl/, `pip download --no-deps skorch optuna captum alembic colorlog mako sqlalchemy
# --python-version 3.12 --only-binary=:all: -d .whl`) and Fashion-MNIST (bench/data/, the four
# idx .gz files), e.g. run(command="bash bench/gpu_session.sh 1", carry=[".whl", "bench/data"]).
#
#   part 1: install; the GPU tests; training throughput; a small skorch-engine search (issue 5)
#   part 2: the 150-config batched search against the skorch engine (issue 6)
#   part 3: the strategies on the batched engine, 150 configs on all 60,000 images (issue 11)
#   part 4: schedules x augmentation on all of Fashion-MNIST (issue 13); a GPU Dask worker resolving
#           --device auto to its GPU (issue 16; carry the dask/distributed wheels in .whl too)
#   part 5: Triple-MNIST from all of Fashion-MNIST's training split (issue 12): the seed's space
#           (triple_cnn, 84x84, filters 32-128) searched on the GPU, then the 2 x 2 of head and loss
#   part 6: issue 38 on a GPU: the table of all 60,000 images (bench/tables/fashion60k.npz comes back
#           under $OUT; its .partial.npz, written every 20 fits, is git-ignored: copy it back into
#           bench/tables/ and name it in carry, and the next call resumes it), then its replay
#   part 7: issue 38's model-based peers (Optuna TPE + HyperbandPruner, DEHB) beside halving at n = 150 on
#           the 12,000-image slice. The peers train on the CPU (2 jobs x 1 thread, as on the laptop), not
#           the GPU: this part buys only the device machine's cores. Carry the dehb, ConfigSpace, loguru,
#           more-itertools wheels, and dask, distributed and pandas (dehb imports distributed)
set -euo pipefail
part=${1:?usage: bash bench/gpu_session.sh 1|2|3|4|5|6|7}
case "$part" in 1|2|3|4|5|6|7) ;; *) echo "part must be 1 to 7, got $part" >&2; exit 2 ;; esac
python -m pip install -q --no-deps --no-index .whl/*.whl
python -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "$part" = 1 ]; then
    python -m pytest -q -m gpu tests
    python bench/training_throughput.py --device cuda --n 45000 --repeats 3 --data-dir bench/data
    timeout 300 python bench/search.py --device cuda --data-dir bench/data --n 8 --images 12000 --max-epochs 10
elif [ "$part" = 2 ]; then
    python bench/batched.py --device cuda --data-dir bench/data --tf32 on
elif [ "$part" = 3 ]; then
    python bench/strategies.py --device cuda --engine batched --data-dir bench/data --images 60000 --n 150 \
        --max-epochs 27 --min-epochs 2 --only random,halving,hyperband
elif [ "$part" = 7 ]; then
    timeout 540 python bench/strategies.py --device cuda --engine batched --data-dir bench/data --images 12000 \
        --n 150 --min-epochs auto --max-epochs 27 --only halving,optuna-tpe-hyperband,dehb \
        --equal-compute --retrains 3  # halving's defaults (factor 3, racing) against both peers
elif [ "$part" = 6 ]; then
    timeout 480 python bench/table.py --table fashion --images 60000 --device cuda --jobs 1 --data-dir bench/data \
        --checkpoint-every 20 --out bench/tables/fashion60k.npz || true
    cp bench/tables/fashion60k*.npz "${OUT:-/tmp}/" 2>/dev/null || true  # a .partial.npz: copy it back, call again
    if [ -f bench/tables/fashion60k.npz ]; then
        python bench/replay.py --table bench/tables/fashion60k.npz --n 150 --seeds 20 \
            --figure "${OUT:-/tmp}/replay_fashion60k.png"
    fi
elif [ "$part" = 5 ]; then
    hpsearch make-triple --from fashion-mnist --data-dir bench/data --out /tmp/triple --no-progress
    python run_search.py --dataset triple-mnist --data-dir /tmp/triple --space triple_cnn --n 20 --cv 3 \
        --max-epochs 15 --strategy halving --device cuda --no-retrain --no-progress --out /tmp/triple_run
    hpsearch compare /tmp/triple_run --same-config --retrain-epochs 15 --device cuda --no-progress
elif [ "$part" = 4 ]; then
    python bench/schedules_augment.py --device cuda --data-dir bench/data --images 60000 --epochs 30
    python run_search.py --n 4 --dataset fashion-mnist --data-dir bench/data --max-train 6000 --space cnn_mnist \
        --cv 2 --max-epochs 3 --no-retrain --no-progress --backend dask --scheduler local:1 --device auto \
        --out /tmp/dask_gpu
    python -c "from hpsearch.jobs.backends import DaskBackend; from hpsearch.training.net import resolve_device; \
b = DaskBackend('local:1'); print('worker resolves auto to', b.client.run(resolve_device, 'auto')); b.close()"
fi
