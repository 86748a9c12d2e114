"""One async adapter per store, shared by the services, the agent tools and retrieval."""
