package brokk

// The library is linked from this checkout's release build, with an rpath so that tests and
// examples run without LD_LIBRARY_PATH. CGO_LDFLAGS, when set, comes first and can point
// elsewhere (see the package documentation).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lbrokk
*/
import "C"
