#!/usr/bin/env bash
# The GPU figures BENCHMARKS.md still lacks, in two calls of the device tool (each under 10 min).
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
#   part 6: issue 38 on a GPU: the model-based peers (Optuna TPE + HyperbandPruner, DEHB: carry the dehb,
#           ConfigSpace, loguru and more-itertools wheels too) beside halving at the n = 150 on the
#           12,000-image slice, then the table of all 60,000 images (bench/tables/fashion60k.npz comes
#           back under $OUT; a .partial.npz copied back into bench/tables/ resumes on the next call)
set -euo pipefail
part=${1:?usage: bash bench/gpu_session.sh 1|2|3|4|5|6}
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
elif [ "$part" = 6 ]; then
    timeout 400 python bench/strategies.py --device cuda --engine batched --data-dir bench/data --images 12000 \
        --n 150 --min-epochs auto --max-epochs 27 --only halving,halving-f4-trend,optuna-tpe-hyperband,dehb \
        --equal-compute --retrains 3 || true  # halving's defaults (factor 3, racing) and the eighth session's
    timeout 150 python bench/table.py --table fashion --images 60000 --device cuda --jobs 1 --data-dir bench/data \
        --out bench/tables/fashion60k.npz || true
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
else
    python bench/schedules_augment.py --device cuda --data-dir bench/data --images 60000 --epochs 30
    python run_search.py --n 4 --dataset fashion-mnist --data-dir bench/data --max-train 6000 --space cnn_mnist \
        --cv 2 --max-epochs 3 --no-retrain --no-progress --backend dask --scheduler local:1 --device auto \
        --out /tmp/dask_gpu
    python -c "from hpsearch.jobs.backends import DaskBackend; from hpsearch.training.net import resolve_device; \
b = DaskBackend('local:1'); print('worker resolves auto to', b.client.run(resolve_device, 'auto')); b.close()"
fi
