"""`python -m signaling` runs the server (same as `sfu-server`)."""

from signaling.cli import main

main()
