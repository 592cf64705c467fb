"""pgserver: a partition group member (master or slave) serving RESP."""

import tessera  # noqa: F401  (first: its compiled modules need the runtime tessera finds)
