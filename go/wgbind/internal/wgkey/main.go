// Command wgkey prints the WireGuard public key (hex) of a private key
// given in hex, for bench/wireguard.sh.
package main

import (
	"encoding/hex"
	"fmt"
	"os"

	"golang.org/x/crypto/curve25519"
)

func main() {
	priv, err := hex.DecodeString(os.Args[len(os.Args)-1])
	if err != nil || len(priv) != 32 {
		fmt.Fprintln(os.Stderr, "usage: wgkey PRIVATE_KEY_HEX")
		os.Exit(2)
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(hex.EncodeToString(pub))
}
