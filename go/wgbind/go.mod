module github.com/meshring/meshring/go/wgbind

go 1.25.0

require (
	github.com/meshring/meshring/go v0.0.0
	github.com/tailscale/wireguard-go v0.0.0-20260715223240-2e01ba5b00f0
	golang.org/x/crypto v0.50.0
	golang.org/x/sys v0.43.0
)

require (
	golang.org/x/net v0.53.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)

replace github.com/meshring/meshring/go => ../
