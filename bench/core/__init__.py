"""What every wing stands on: the UserError that CLIs print as one line and exit 2,
atomic file writes, log formatting, the device mesh and its two data-parallel
strategies, jax.distributed start-up, signal handling and progress bars.

Imports nothing of this project: configs, input_pipeline and models use it too.
"""
