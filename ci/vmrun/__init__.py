"""ci/vm-run: boot a guest kernel with virtme-ng and run one command in it."""
