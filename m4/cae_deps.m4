dnl cae_deps.m4: dependency checks that name the Debian package to install.

dnl CAE_REQUIRE_PKG(VARIABLE-PREFIX, PKG-CONFIG-MODULE, DEBIAN-PACKAGES)
AC_DEFUN([CAE_REQUIRE_PKG], [
  PKG_CHECK_MODULES([$1], [$2], [],
    [AC_MSG_ERROR([pkg-config module '$2' not found; on Debian install: apt-get install $3])])
])

dnl CAE_REQUIRE_MPI: Open MPI's C compiler wrapper and its flags.
AC_DEFUN([CAE_REQUIRE_MPI], [
  AC_PATH_PROG([MPICC], [mpicc], [])
  AS_IF([test -z "$MPICC"],
    [AC_MSG_ERROR([mpicc (Open MPI) not found; on Debian install: apt-get install libopenmpi-dev openmpi-bin])])
  PKG_CHECK_MODULES([MPI], [ompi-c], [],
    [AC_MSG_ERROR([pkg-config module 'ompi-c' not found; on Debian install: apt-get install libopenmpi-dev])])
  AC_PATH_PROG([MPIRUN], [mpirun], [])
])
