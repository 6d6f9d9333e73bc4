"""The stages of the flow, one module each: registry, router, dispatcher, worker."""
