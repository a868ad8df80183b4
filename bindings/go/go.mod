module brokk.dev/brokk

go 1.24
