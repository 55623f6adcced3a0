# Sourced by the result scripts that run JOBS processes at once. Torch gives every process as many
# threads as the machine has cores, so N processes would run N times as many threads as cores; on
# this 2-core machine two 2-thread trainings ran 24 times slower than one (docs/RESULTS.md). Unless
# OMP_NUM_THREADS is already set, each of the JOBS processes gets cores / JOBS threads (at least 1);
# every run folder's environment.jsonl records the count used.
threads_per_job() {  # threads_per_job JOBS
  if [ "$1" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    local cores
    cores=$(nproc)
    OMP_NUM_THREADS=$(( cores / $1 > 0 ? cores / $1 : 1 ))
    export OMP_NUM_THREADS
  fi
}
