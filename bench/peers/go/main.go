// Command peer-go serves GET /api/orders/{id} and POST /api/orders the way a Go team would write
// them without Tern: net/http and a pgx pool, no framework. It is the Go peer of scripts/bench
// (docs/performance.md, "Peers"): the same database, the same pool size, the same bodies as the
// orders functions (tests/tests/peers.rs compares them).
//
// Settings: PORT (default 8080), DATABASE_URL (required), DB_POOL_SIZE (default 8).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	maxItems     = 100
	maxQuantity  = 1000
	maxUnitPrice = 1_000_000_000
	bodyLimit    = 64 << 10
	orderColumns = "id, status, customer_email, currency, total_cents, payment_id, created_at, updated_at"
)

type item struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

type order struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	CustomerEmail string    `json:"customer_email"`
	Currency      string    `json:"currency"`
	TotalCents    int64     `json:"total_cents"`
	Items         []item    `json:"items"`
	PaymentID     *string   `json:"payment_id"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

type newOrder struct {
	CustomerEmail string `json:"customer_email"`
	Currency      string `json:"currency"`
	Items         []item `json:"items"`
}

type fieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

type server struct{ db *pgxpool.Pool }

func main() {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		log.Fatal("peer-go: DATABASE_URL is required")
	}
	port := envInt("PORT", 8080)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		log.Fatalf("peer-go: DATABASE_URL: %v", err)
	}
	cfg.MaxConns = int32(envInt("DB_POOL_SIZE", 8))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatalf("peer-go: database: %v", err)
	}
	defer pool.Close()
	s := &server{db: pool}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders/{id}", s.get)
	mux.HandleFunc("POST /api/orders", s.create)
	srv := &http.Server{
		Addr:              fmt.Sprintf("127.0.0.1:%d", port),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("peer-go: %v", err)
	}
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		log.Fatalf("peer-go: %s must be a positive integer, not %q", name, v)
	}
	return n
}

// get: the order and its items. The two SELECTs go in one batch: one round trip.
func (s *server) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !isOrderID(id) {
		problem(w, http.StatusNotFound, "Not found", "There is no order "+id+".", nil)
		return
	}
	batch := &pgx.Batch{}
	batch.Queue("SELECT "+orderColumns+" FROM orders WHERE id = $1", id)
	batch.Queue("SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line", id)
	res := s.db.SendBatch(r.Context(), batch)
	defer res.Close()
	var o order
	err := scanOrder(res.QueryRow(), &o)
	if errors.Is(err, pgx.ErrNoRows) {
		problem(w, http.StatusNotFound, "Not found", "There is no order "+id+".", nil)
		return
	}
	if err != nil {
		unavailable(w, err)
		return
	}
	rows, err := res.Query()
	if err != nil {
		unavailable(w, err)
		return
	}
	o.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (item, error) {
		var it item
		var q int32
		err := row.Scan(&it.SKU, &q, &it.UnitPriceCents)
		it.Quantity = int64(q)
		return it, err
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	o.CustomerEmail = maskEmail(o.CustomerEmail)
	writeJSON(w, http.StatusOK, &o)
}

// create: the order, its items and its outbox row in one transaction.
func (s *server) create(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, bodyLimit))
	dec.DisallowUnknownFields()
	var n newOrder
	if err := dec.Decode(&n); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			problem(w, http.StatusRequestEntityTooLarge, "Request body too large", err.Error(), nil)
			return
		}
		// As the orders functions answer: JSON that does not parse is 400, JSON of the wrong
		// shape (a field unknown or of the wrong type) is 422.
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			problem(w, http.StatusBadRequest, "Malformed request", err.Error(), nil)
			return
		}
		problem(w, http.StatusUnprocessableEntity, "The request is not valid", err.Error(), nil)
		return
	}
	total, errs := validate(&n)
	if len(errs) > 0 {
		problem(w, http.StatusUnprocessableEntity, "The request is not valid", "", errs)
		return
	}
	id := newOrderID()
	o := order{ID: id, Items: make([]item, len(n.Items))}
	err := pgx.BeginFunc(r.Context(), s.db, func(tx pgx.Tx) error {
		err := scanOrder(tx.QueryRow(r.Context(),
			"INSERT INTO orders (id, customer_email, currency, total_cents) VALUES ($1, $2, $3, $4) RETURNING "+orderColumns,
			id, n.CustomerEmail, n.Currency, total), &o)
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for line, it := range n.Items {
			sku := strings.TrimSpace(it.SKU)
			o.Items[line] = item{SKU: sku, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents}
			batch.Queue("INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents) VALUES ($1, $2, $3, $4, $5)",
				id, line, sku, it.Quantity, it.UnitPriceCents)
		}
		data, _ := json.Marshal(map[string]any{"order_id": id, "currency": n.Currency, "total_cents": total, "items": len(n.Items)})
		batch.Queue("INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data) VALUES ('orders', $1, 'com.example.order.created', '//peer-go', $2, $3)",
			newEventID(), id, data)
		return tx.SendBatch(r.Context(), batch).Close()
	})
	if err != nil {
		unavailable(w, err)
		return
	}
	o.CustomerEmail = maskEmail(o.CustomerEmail)
	w.Header().Set("Location", "/api/orders/"+id)
	writeJSON(w, http.StatusCreated, &o)
}

func scanOrder(row pgx.Row, o *order) error {
	return row.Scan(&o.ID, &o.Status, &o.CustomerEmail, &o.Currency, &o.TotalCents, &o.PaymentID, &o.CreatedAt, &o.UpdatedAt)
}

func validate(n *newOrder) (int64, []fieldError) {
	var errs []fieldError
	if !isEmail(n.CustomerEmail) {
		errs = append(errs, fieldError{"/customer_email", "must be an email address such as ada@example.com"})
	}
	if !isCurrency(n.Currency) {
		errs = append(errs, fieldError{"/currency", "must be an ISO 4217 code such as EUR or USD"})
	}
	if len(n.Items) == 0 || len(n.Items) > maxItems {
		errs = append(errs, fieldError{"/items", fmt.Sprintf("must hold 1 to %d items", maxItems)})
	}
	var total int64
	overflow := false
	for i, it := range n.Items {
		sku := strings.TrimSpace(it.SKU)
		if sku == "" || len(sku) > 64 || strings.IndexFunc(sku, unicode.IsControl) >= 0 {
			errs = append(errs, fieldError{fmt.Sprintf("/items/%d/sku", i), "must be 1 to 64 printable characters"})
		}
		if it.Quantity < 1 || it.Quantity > maxQuantity {
			errs = append(errs, fieldError{fmt.Sprintf("/items/%d/quantity", i), fmt.Sprintf("must be 1 to %d", maxQuantity)})
		}
		if it.UnitPriceCents < 0 || it.UnitPriceCents > maxUnitPrice {
			errs = append(errs, fieldError{fmt.Sprintf("/items/%d/unit_price_cents", i), fmt.Sprintf("must be 0 to %d", maxUnitPrice)})
		}
		if it.Quantity > 0 && it.UnitPriceCents > (math.MaxInt64-total)/it.Quantity {
			overflow = true
		} else {
			total += it.UnitPriceCents * it.Quantity
		}
	}
	if overflow {
		errs = append(errs, fieldError{"/items", "the order total overflows"})
	}
	return total, errs
}

// isEmail: one @, a non-empty local part, a dotted domain, no spaces.
func isEmail(s string) bool {
	if len(s) > 254 || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return false
	}
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && len(local) <= 64 && !strings.Contains(domain, "@") &&
		strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") &&
		!strings.HasSuffix(domain, ".") && !strings.Contains(domain, "..")
}

// isCurrency: three capital letters (the orders functions also check the ISO 4217 list).
func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range []byte(s) {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func maskEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if !ok {
		return "***"
	}
	first := ""
	for _, r := range local {
		first = string(r)
		break
	}
	return first + "***@" + domain
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newOrderID: "ord_" and 26 base32 characters of 128 random bits.
func newOrderID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "ord_" + idEncoding.EncodeToString(b[:])
}

func isOrderID(s string) bool {
	if len(s) != 30 || !strings.HasPrefix(s, "ord_") {
		return false
	}
	for _, c := range []byte(s[4:]) {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// newEventID: a random (version 4) UUID.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func problem(w http.ResponseWriter, status int, title, detail string, errs []fieldError) {
	body := map[string]any{"title": title, "status": status}
	if detail != "" {
		body["detail"] = detail
	}
	if errs != nil {
		body["errors"] = errs
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func unavailable(w http.ResponseWriter, err error) {
	log.Printf("peer-go: database: %v", err)
	w.Header().Set("Retry-After", "1")
	problem(w, http.StatusServiceUnavailable, "Service unavailable", "The database is unavailable; try again.", nil)
}
