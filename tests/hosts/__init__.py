"""Simulated hosts for tests: network namespaces on one bridge, as root.

```python
with open_test_hosts(3) as hosts:
    server = hosts["h2"].popen([...], stdout=subprocess.PIPE, text=True)
    hosts["h1"].run([...], check=True)
```

Test modules get the ``test_hosts`` and ``requires_netns`` fixtures with
``pytest_plugins = ["tests.hosts.fixtures"]``.
"""

from tests.hosts._lines import LineReader
from tests.hosts._netns import (
    NetnsError,
    NetnsUnavailable,
    TestHost,
    TestHosts,
    check_netns_available,
    netns_unavailable_reason,
    open_test_hosts,
)

__all__ = [
    "LineReader",
    "NetnsError",
    "NetnsUnavailable",
    "TestHost",
    "TestHosts",
    "check_netns_available",
    "netns_unavailable_reason",
    "open_test_hosts",
]
