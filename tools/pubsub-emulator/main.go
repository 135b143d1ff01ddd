// Command pubsub-emulator runs Google's pstest Pub/Sub fake server on a fixed
// address, so Tern's local run and tests talk to a real gRPC Pub/Sub API
// (the same one the google-cloud-pubsub crate speaks in production).
//
// Usage: pubsub-emulator [--addr 127.0.0.1:8085]
//
// It prints one line "pubsub-emulator listening on ADDR" once it accepts
// connections, and stops cleanly on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "host:port to listen on (loopback by default)")
	flag.Parse()

	srv := newServer(*addr)
	fmt.Printf("pubsub-emulator listening on %s\n", srv.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	if err := srv.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pubsub-emulator: close: %v\n", err)
		os.Exit(1)
	}
}

// newServer starts pstest, turning its panic on a busy port into one clear line.
func newServer(addr string) (srv *pstest.Server) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "pubsub-emulator: cannot listen on %s: %v\n", addr, r)
			os.Exit(2)
		}
	}()
	return pstest.NewServerWithAddress(addr)
}
