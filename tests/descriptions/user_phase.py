"""A user phase for test_language: marks the component and removes its phase attribute."""

from sd_actors.descriptions import ComponentDescription


def add_marker(component: ComponentDescription) -> None:
    component.set("marker", "seen")
    component.remove("phase.mark")
