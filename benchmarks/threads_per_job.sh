# Sourced by the result scripts that run JOBS processes at once. Torch gives every process as many
# threads as the machine has cores, so N processes would run N times as many threads as cores; on
# this 2-core machine two 2-thread trainings ran 24 times slower than one.
# `env $(threads_per_job JOBS) xargs -P JOBS ...` gives each of the JOBS processes cores / JOBS
# threads (at least 1) unless OMP_NUM_THREADS is already set; every run folder's environment.jsonl
# records the count used.
threads_per_job() {  # threads_per_job JOBS: prints OMP_NUM_THREADS=N, or nothing for one job or a set count
  if [ "$1" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    local cores
    cores=$(nproc)
    echo "OMP_NUM_THREADS=$(( cores / $1 > 0 ? cores / $1 : 1 ))"
  fi
}
