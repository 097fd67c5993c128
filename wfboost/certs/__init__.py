"""`wfboost certs`: make, renew and publish the webhook's certificates (a Job or CronJob, not a server)."""
