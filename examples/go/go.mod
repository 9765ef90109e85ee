module example.org/mxpuppet-token

go 1.19
