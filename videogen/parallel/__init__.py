"""Device mesh, logical axis rules and multi-host initialisation."""
