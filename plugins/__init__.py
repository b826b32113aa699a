"""pluggy hook specifications, the plugin-manager factory and the built-in component plugins."""
