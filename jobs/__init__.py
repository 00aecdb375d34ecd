"""The torch-free job core: contract, limits, settings, lifecycle, Redis job store, storage, queue
client, webhook signing, SSRF guard, submission and recovery. Imported by the API and the workers."""
