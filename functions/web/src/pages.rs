//! HTML, written out by hand: every interpolated value goes through [`esc`].

use orders_domain::Order;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Tern orders</title><link rel=\"stylesheet\" href=\"/static/tern.css\"></head>\
<body><header><a href=\"/\">Tern orders</a></header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// What the create form was filled with, to show it again with errors.
#[derive(Default, Clone)]
pub struct FormValues {
    pub email: String,
    pub currency: String,
    pub lines: Vec<(String, String, String)>,
}

pub const LINES: usize = 3;
const CURRENCIES: [&str; 6] = ["EUR", "USD", "GBP", "CHF", "JPY", "SEK"];

pub fn home(
    token: &str,
    values: &FormValues,
    errors: &[String],
    lookup_error: Option<&str>,
) -> String {
    let mut body = String::from("<h1>Order tea, track it</h1>");
    body.push_str("<section><h2>New order</h2>");
    if !errors.is_empty() {
        body.push_str("<ul class=\"errors\" id=\"errors\">");
        for e in errors {
            body.push_str(&format!("<li>{}</li>", esc(e)));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/orders\" id=\"create\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label for=\"email\">Email</label><input type=\"email\" id=\"email\" name=\"customer_email\" required value=\"{}\">\
<label for=\"currency\">Currency</label><select id=\"currency\" name=\"currency\">",
        esc(token),
        esc(&values.email)
    ));
    let chosen = if values.currency.is_empty() {
        "EUR"
    } else {
        values.currency.as_str()
    };
    for c in CURRENCIES {
        let sel = if c == chosen { " selected" } else { "" };
        body.push_str(&format!("<option{sel}>{c}</option>"));
    }
    body.push_str(
        "</select><p class=\"hint\">Unit prices in the currency's own decimals: 12.50 EUR, 1250 JPY.</p>",
    );
    for i in 0..LINES {
        let (sku, qty, price) = values.lines.get(i).cloned().unwrap_or_default();
        let (sku, qty, price) = if i == 0 && sku.is_empty() && values.lines.is_empty() {
            ("TEA-SENCHA".to_owned(), "1".to_owned(), "12.50".to_owned())
        } else {
            (sku, qty, price)
        };
        body.push_str(&format!(
            "<fieldset><legend>Item {n}</legend><div class=\"line\">\
<label>SKU<input name=\"sku_{i}\" value=\"{}\"></label>\
<label>Quantity<input name=\"quantity_{i}\" inputmode=\"numeric\" value=\"{}\"></label>\
<label>Unit price<input name=\"price_{i}\" inputmode=\"decimal\" value=\"{}\"></label></div></fieldset>",
            esc(&sku),
            esc(&qty),
            esc(&price),
            n = i + 1
        ));
    }
    body.push_str("<button type=\"submit\">Place order</button></form></section>");
    body.push_str("<section><h2>Track an order</h2><form method=\"get\" action=\"/lookup\" id=\"lookup\">\
<label for=\"lookup-id\">Order id</label><input id=\"lookup-id\" name=\"id\" placeholder=\"ord_…\" required>");
    if let Some(e) = lookup_error {
        body.push_str(&format!("<p class=\"errors\">{}</p>", esc(e)));
    }
    body.push_str("<button type=\"submit\">Look up</button></form></section>");
    layout("Orders", &body)
}

pub fn order(o: &Order) -> String {
    let status = o.status_str();
    let mut rows = String::new();
    for i in &o.items {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.sku),
            i.quantity,
            money(i.unit_price_cents, &o.currency)
        ));
    }
    let body = format!(
        "<h1>Order <code id=\"order-id\">{id}</code></h1><section>\
<p>Status: <span class=\"status {status}\" id=\"status\">{status}</span></p>\
<p>Customer: {email}</p><p>Total: <strong id=\"total\">{total}</strong></p>\
<table><thead><tr><th>SKU</th><th>Quantity</th><th>Unit price</th></tr></thead><tbody>{rows}</tbody></table>\
<p class=\"muted\">Keep this page's address: it is your tracking link. Placed {created}.</p></section>\
<p><a href=\"/\">Place another order</a></p>",
        id = esc(&o.id),
        email = esc(&o.customer_email),
        total = money(o.total_cents, &o.currency),
        created = o.created_at.format("%Y-%m-%d %H:%M UTC"),
    );
    layout(&format!("Order {}", o.id), &body)
}

pub fn not_found(id: &str) -> String {
    layout(
        "Not found",
        &format!(
            "<h1>No such order</h1><section><p>There is no order <code>{}</code>. Check the link you were given.</p>\
<p><a href=\"/\">Back</a></p></section>",
            esc(id)
        ),
    )
}

pub fn forbidden() -> String {
    layout(
        "Refused",
        "<h1>Form expired</h1><section><p>The form could not be verified. Go back, reload the page and submit again.</p>\
<p><a href=\"/\">Back</a></p></section>",
    )
}

/// An amount in minor units as people write it, with the currency's own decimals (ISO 4217).
fn money(minor: i64, currency: &str) -> String {
    esc(&orders_domain::currency::format(minor, currency))
}

trait StatusStr {
    fn status_str(&self) -> &'static str;
}
impl StatusStr for Order {
    fn status_str(&self) -> &'static str {
        self.status.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_interpolated() {
        assert_eq!(esc("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
        let html = home(
            "t",
            &FormValues {
                email: "\"><script>x</script>".into(),
                ..Default::default()
            },
            &[],
            None,
        );
        assert!(!html.contains("<script>"));
        assert!(
            !html.contains("style="),
            "no inline styles: the CSP forbids them"
        );
    }
}
