"""The ground floor: utilities every app may use and that import no app of the project.

Logging context, Prometheus counters, the shared cache client, database work from the event loop.
"""
