"""Where the work runs: backends (loky processes or a Dask cluster), resources (cores, torch threads per
job), the training data resident in a job (resident), and workers that die with their parent.
"""
