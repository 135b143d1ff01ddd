// Command pubsub-emulator runs Google's pstest Pub/Sub fake server behind one address that
// speaks both of Pub/Sub's APIs, like Google's own emulator:
//
//   - gRPC (HTTP/2 with prior knowledge): publish, streaming pull, and everything else pstest
//     implements; connections are passed through to pstest unchanged;
//   - REST/JSON (HTTP/1.1): the admin calls Google's Rust client makes over REST (create, get
//     and delete topics and subscriptions), served by calling pstest in-process.
//
// Usage: pubsub-emulator [--addr 127.0.0.1:8085]
//
// It prints "pubsub-emulator listening on ADDR" once it accepts connections, and stops cleanly
// on SIGINT or SIGTERM.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "host:port to listen on (loopback by default)")
	flag.Parse()

	fake := pstest.NewServerWithAddress("127.0.0.1:0")
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pubsub-emulator: cannot listen on %s: %v\n", *addr, err)
		os.Exit(2)
	}
	rest := &chanListener{addr: ln.Addr(), conns: make(chan net.Conn)}
	go func() { _ = (&http.Server{Handler: restAPI(fake)}).Serve(rest) }()
	go acceptLoop(ln, fake.Addr, rest)
	fmt.Printf("pubsub-emulator listening on %s\n", ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	_ = ln.Close()
	_ = fake.Close()
}

// acceptLoop sends HTTP/2 connections (gRPC) to pstest and the rest to the REST server.
func acceptLoop(ln net.Listener, grpcAddr string, rest *chanListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			br := bufio.NewReader(c)
			head, err := br.Peek(3)
			if err != nil {
				_ = c.Close()
				return
			}
			conn := &peekedConn{Conn: c, r: br}
			if string(head) == "PRI" {
				pipe(conn, grpcAddr)
				return
			}
			rest.conns <- conn
		}()
	}
}

func pipe(c net.Conn, backend string) {
	b, err := net.Dial("tcp", backend)
	if err != nil {
		_ = c.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { _, _ = io.Copy(b, c); closeWrite(b); wg.Done() }()
	go func() { _, _ = io.Copy(c, b); closeWrite(c); wg.Done() }()
	wg.Wait()
	_ = c.Close()
	_ = b.Close()
}

func closeWrite(c net.Conn) {
	switch t := c.(type) {
	case *net.TCPConn:
		_ = t.CloseWrite()
	case *peekedConn:
		closeWrite(t.Conn)
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener hands the REST server the connections acceptLoop gives it.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.conns) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
