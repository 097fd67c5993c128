"""The side store service: content-addressed blobs that wfboost moves out of etcd, streamed, verified, collected.

A process of its own (`wfboost sidestore serve`). `server` is the HTTP API, `store` and `uploads` hold the rules,
`backends` the storage interface (Redis, filesystem, S3), `gc` and `live_workflows` the sweeper and its view of
live Workflows. Its clients (the webhook, the CLI) talk to it through `wfboost.blobs`, never by importing this
package. See docs/sidestore.md.
"""
