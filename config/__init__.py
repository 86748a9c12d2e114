"""The ground floor: settings, ports, local-stack secrets and paths.

Every layer (stores, retrieval, guards, agent_tools, services, the CLI) may import this package; it imports
none of them.
"""
