module brokk.dev/brokk/examples

go 1.24

require brokk.dev/brokk v0.0.0

// The binding in this checkout; nothing is fetched.
replace brokk.dev/brokk => ../../bindings/go
