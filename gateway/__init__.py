"""gateway: the client-facing proxy routing by partition."""

import tessera  # noqa: F401  (first: its compiled modules need the runtime tessera finds)
