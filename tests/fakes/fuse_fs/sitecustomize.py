"""Installs the directory-rename-refusing layer at interpreter start when this folder is on
PYTHONPATH and MEDPRUNE_TEST_FUSE_ROOTS is set (see fuse_like_fs.py)."""

import fuse_like_fs

fuse_like_fs.install_from_env()
fuse_like_fs.record_install()
