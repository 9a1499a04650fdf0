#!/usr/bin/env bash
# The GPU figures of issue 18 in one call on a bare GPU machine (its own PyTorch, no pip, this project copied over),
# most important first, within --budget seconds (default 480):
#   env, optimizers             what the machine holds; are the fused / foreach optimizers bit-identical there
#   bench_CONFIG                tools/bench_search.py --device cuda --batch 96: ours (eager, no-recompute) against
#                               the baseline, for every config (pdarts-s3, -s1, -s2; pc-darts and darts later)
#   bench_CONFIG_compiled       its compile and cudagraph variants (pdarts-s3 right after its eager figures: its
#                               compilation is the cheapest of the paper's stages; the other configs last)
#   bench_pdarts-s3_compiled_no-recompute   cudagraph-no-recompute: does recomputation pay with the compiler?
#   data, search_OPTION         a P-DARTS search of one epoch per stage on 10,000 generated CIFAR-10 images with each
#                               speed option: eager, compile, cudagraph, no-recompute, bf16
#   bench_train, bench_train_compile   tools/bench_train.py --device cuda --batch 96 (skipped without timm)
# Every step has its own time limit (never beyond what the budget has left); a failed, timed-out or skipped step is
# named with the reason and the next one runs. At the end: one table (gpu_check.txt), every result in one JSON
# (gpu_check.json) and every step's output (gpu_check.log) in --out (default: $OUT, else gpu_check_out).
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine
#   bash benchmarks/gpu_check.sh --tiny               # the same steps on the CPU at toy sizes, 3-5 min on 2 cores
#                                                     # (compiled steps trace with aot_eager: no kernels generated)
#   bash benchmarks/gpu_check.sh --only bench_pdarts-s1_compiled,search_cudagraph  # what an earlier call left out
#   bash benchmarks/gpu_check.sh --skip search_bf16 --budget 300
set -u

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }  # the comment above

TINY=0
OUT_DIR=${OUT:-gpu_check_out}
BUDGET=480
ONLY=""
SKIP=""
while (($#)); do
    case $1 in
        --tiny) TINY=1 ;;
        --out) OUT_DIR=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --skip) SKIP=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "error: --budget takes whole seconds, got $BUDGET" >&2; exit 2; }

cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}  # the GPU machine's own Python; here, the project's .venv if `make setup` made one
[[ -z ${PYTHON:-} && -x .venv/bin/python ]] && PY=.venv/bin/python
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT_DIR" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
LOG=$OUT_DIR/gpu_check.log
: >"$LOG"
START=$SECONDS
RESERVE=25  # seconds kept for the report
declare -A STATUS=()
ORDER=()

if ((TINY)); then
    DEV=cpu
    BENCH_SIZE=(--channels 8 --layers 3 --batch 4 --warmup 0 --steps 1 --compile-backend aot_eager)
    CONFIGS=(pdarts-s3)  # the first is also compiled first
    MORE_CONFIGS=()  # after the end-to-end search
    COMPILED_CONFIGS=()  # compiled after the first, last
    COMPILED_VARIANTS=compile
    COMPILED_NO_RECOMPUTE=compile-no-recompute
    IMAGES=64
    # One batch per half and a space of 3 ops: a compiled 3-cell stage still traces 9 graphs of ~3 s each here.
    SEARCH_SIZE=(--preset tiny --train-limit 32 --space s3 --keep-ops 2 2 --layers 3 3 3 --compile-backend aot_eager)
    TRAIN_SIZE=(--channels 8 --layers 5 --batch 4 --warmup 0 --steps 1)
    TRAIN_VARIANTS=channels-last
    FIRST_SEARCHES=(eager compile)
    LATER_SEARCHES=(no-recompute bf16)
    CAP_BENCH=60 CAP_COMPILED=120 CAP_SEARCH=60 CAP_SEARCH_COMPILED=240 CAP_TRAIN=60
else
    DEV=cuda
    BENCH_SIZE=(--batch 96 --warmup 1 --steps 3)
    CONFIGS=(pdarts-s3 pdarts-s1 pdarts-s2)
    MORE_CONFIGS=(pc-darts darts)
    COMPILED_CONFIGS=(pdarts-s1 pc-darts pdarts-s2 darts)
    COMPILED_VARIANTS=compile,cudagraph
    COMPILED_NO_RECOMPUTE=cudagraph-no-recompute
    IMAGES=10000
    SEARCH_SIZE=()
    TRAIN_SIZE=(--batch 96 --warmup 2 --steps 5)
    TRAIN_VARIANTS=channels-last,amp,amp+channels-last
    FIRST_SEARCHES=(eager cudagraph)
    LATER_SEARCHES=(compile no-recompute bf16)
    CAP_BENCH=90 CAP_COMPILED=300 CAP_SEARCH=200 CAP_SEARCH_COMPILED=360 CAP_TRAIN=120
fi

wanted() {  # is step $1 selected by --only / --skip?
    [[ -n $ONLY && ",$ONLY," != *",$1,"* ]] && return 1
    [[ ",$SKIP," == *",$1,"* ]] && return 1
    return 0
}

note() {  # record step $1's status $2 and print it
    STATUS[$1]=$2
    ORDER+=("$1")
    echo "== $1: $2"
    echo "== $1: $2" >>"$LOG"
}

run_step() {  # run_step NAME CAP COMMAND...: COMMAND with a limit of CAP seconds or what the budget has left
    local name=$1 cap=$2
    shift 2
    wanted "$name" || return 0
    local left=$((BUDGET - (SECONDS - START) - RESERVE))
    ((left < 15)) && { note "$name" "skipped: the ${BUDGET} s budget is spent (run it with --only $name)"; return 0; }
    local limit=$((cap < left ? cap : left)) began=$SECONDS
    echo "== $name (limit ${limit} s): $*"
    echo "== $name (limit ${limit} s): $*" >>"$LOG"
    timeout -k 10 "$limit" "$@" >"$WORK/$name.out" 2>&1
    local rc=$?
    cat "$WORK/$name.out" >>"$LOG"
    tail -n 12 "$WORK/$name.out"
    local took=$((SECONDS - began))
    if ((rc == 0)); then
        note "$name" "ok (${took} s)"
    elif ((rc == 124 || rc == 137)); then
        note "$name" "TIMED OUT after ${limit} s (a bigger budget, or --only $name)"
    else
        note "$name" "FAILED (exit $rc after ${took} s): $(grep -v '^\s*$' "$WORK/$name.out" | tail -n 1 | cut -c1-200)"
    fi
}

# What the tools import: the search core (bench_search too), the search's logs and pictures, the data generator.
CORE=(torchvision numpy PIL sklearn tqdm)
SEARCH=("${CORE[@]}" tensorboard matplotlib)
blocked() {  # blocked STEP MODULE...: true (the step noted as skipped) if a module it needs is not installed here
    local name=$1 module
    shift
    module=$("$PY" -c 'import importlib.util as u, sys; print(next((m for m in sys.argv[1:] if u.find_spec(m) is None), ""))' "$@")
    [[ -z $module ]] && return 1
    wanted "$name" && note "$name" "skipped: the Python module $module is not installed here"
    return 0
}

search_step() {  # search_step OPTION: P-DARTS, one epoch per stage, on the generated CIFAR-10, with OPTION
    local option=$1 cap=$CAP_SEARCH flags=()
    case $option in
        compile) flags=(--compile default); cap=$CAP_SEARCH_COMPILED ;;
        cudagraph) flags=(--compile reduce-overhead); cap=$CAP_SEARCH_COMPILED ;;
        no-recompute) flags=(--no-recompute) ;;
        bf16) flags=(--bf16) ;;
    esac
    blocked "search_$option" "${SEARCH[@]}" && return 0
    if [[ ! -d $WORK/data/cifar-10-batches-py ]]; then
        wanted "search_$option" && note "search_$option" "skipped: no generated data (step data)"
        return 0
    fi
    run_step "search_$option" "$cap" "$PY" tools/search.py --dataset cifar10 --data "$WORK/data" \
        --out "$WORK/search_$option" --device "$DEV" --epochs 1 --arch-frozen-epochs 0 --valid-last 1 --no-progress \
        "${SEARCH_SIZE[@]}" "${flags[@]}"
    [[ -f $WORK/search_$option/search.log ]] && { echo "-- search_$option/search.log"; cat "$WORK/search_$option/search.log"; } >>"$LOG"
}

echo "gpu_check: device $DEV, budget ${BUDGET} s, work in $WORK, results in $OUT_DIR"
run_step env 60 "$PY" benchmarks/gpu_check.py env
if [[ $DEV == cuda ]] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    note cuda "FAILED: torch sees no CUDA GPU here; run with --tiny for the CPU"
    "$PY" benchmarks/gpu_check.py report "$WORK" "$OUT_DIR" >/dev/null 2>&1
    exit 1
fi
run_step optimizers 60 "$PY" benchmarks/gpu_check.py optimizers --device "$DEV"
bench_step() {  # bench_step CONFIG VARIANTS STEP CAP: tools/bench_search.py, one JSON per step
    blocked "$3" "${CORE[@]}" && return 0
    run_step "$3" "$4" "$PY" tools/bench_search.py --device "$DEV" --configs "$1" --variants "$2" "${BENCH_SIZE[@]}" \
        --json "$WORK/bench_search_$3.json"
}
bench_step "${CONFIGS[0]}" eager,no-recompute "bench_${CONFIGS[0]}" "$CAP_BENCH"
bench_step "${CONFIGS[0]}" "$COMPILED_VARIANTS" "bench_${CONFIGS[0]}_compiled" "$CAP_COMPILED"
((TINY)) && wanted bench_cudagraph && note bench_cudagraph "skipped: CUDA graphs need CUDA (this is --tiny)"
for config in "${CONFIGS[@]:1}"; do
    bench_step "$config" eager,no-recompute "bench_$config" "$CAP_BENCH"
done
blocked data numpy scipy || run_step data 60 "$PY" benchmarks/gpu_check.py data "$WORK/data" --images "$IMAGES"
search_step "${FIRST_SEARCHES[0]}"
for config in "${MORE_CONFIGS[@]}"; do
    bench_step "$config" eager,no-recompute "bench_$config" "$CAP_BENCH"
done
search_step "${FIRST_SEARCHES[1]}"
bench_step "${CONFIGS[0]}" "$COMPILED_NO_RECOMPUTE" "bench_${CONFIGS[0]}_compiled_no-recompute" "$CAP_COMPILED"
if ! blocked bench_train "${CORE[@]}" timm; then
    run_step bench_train "$CAP_TRAIN" "$PY" tools/bench_train.py --device "$DEV" "${TRAIN_SIZE[@]}" \
        --variants "$TRAIN_VARIANTS" --json "$WORK/bench_train_eager.json"
fi
for config in "${COMPILED_CONFIGS[@]}"; do
    bench_step "$config" "$COMPILED_VARIANTS" "bench_${config}_compiled" "$CAP_COMPILED"
done
for option in "${LATER_SEARCHES[@]}"; do
    search_step "$option"
done
if ((TINY)); then
    wanted bench_train_compile && note bench_train_compile "skipped: inductor takes minutes on a CPU (this is --tiny)"
elif ! blocked bench_train_compile "${CORE[@]}" timm; then
    run_step bench_train_compile "$CAP_TRAIN" "$PY" tools/bench_train.py --device "$DEV" "${TRAIN_SIZE[@]}" \
        --variants compile --json "$WORK/bench_train_compile.json"
fi

{
    printf '{'
    sep=""
    for name in "${ORDER[@]}"; do
        printf '%s"%s": "%s"' "$sep" "$name" "$(printf '%s' "${STATUS[$name]}" | sed 's/\\/\\\\/g; s/"/\\"/g')"
        sep=", "
    done
    printf '}\n'
} >"$WORK/steps.json"
echo "== report (total $((SECONDS - START)) s)"
"$PY" benchmarks/gpu_check.py report "$WORK" "$OUT_DIR" || echo "error: the report failed; the steps' output is in $LOG"
echo "wrote $OUT_DIR/gpu_check.txt, gpu_check.json and gpu_check.log; work files in $WORK"
failed=0
for name in "${ORDER[@]}"; do
    [[ ${STATUS[$name]} == FAILED* || ${STATUS[$name]} == TIMED* ]] && failed=1
done
exit $failed
