"""The sd-actors runtime: component actors, lifecycle, supervision, System, daemon and CLI."""
