"""TLS material: certificates for the Service names, CA bundles, and serving contexts that reload in place.

Below every service that serves HTTPS (the webhook, the side store), so they share one careful implementation.
"""
