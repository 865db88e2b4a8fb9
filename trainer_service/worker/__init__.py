"""The RQ training worker (`python -m trainer_service worker`): the process (`process`), the job
function it runs (`jobs.train_job`) and the imports and datasets loaded once before RQ forks each
job (`preload`)."""
