"""Real inference engines that sonic can build and launch locally (for tests and demos)."""
