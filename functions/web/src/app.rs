use crate::csrf::Csrf;
use crate::pages::{self, FormValues, LINES};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use orders_domain::id::is_order_id;
use orders_domain::{NewItem, NewOrder, OrderError, currency, repo};
use std::collections::HashMap;
use tern::{ConfigError, Context, Problem, StartError};
use tern_db::Db;
use tern_events::Outbox;

const CSS: &str = include_str!("../static/tern.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
struct App {
    db: Db,
    outbox: Outbox,
    csrf: Csrf,
}

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let secret = tern::secrets::resolve(ctx.env(), "WEB_CSRF_SECRET").await?.ok_or_else(|| {
        ConfigError::new("WEB_CSRF_SECRET", "is required (32+ random characters; or WEB_CSRF_SECRET_FILE / _SECRET) but not set")
    })?;
    if secret.len() < 32 {
        return Err(ConfigError::new("WEB_CSRF_SECRET", "must be at least 32 characters").into());
    }
    let secure_cookie = ctx.env().or("WEB_COOKIE_SECURE", true)?;
    let origins =
        crate::csrf::parse_origins(ctx.env().raw(crate::csrf::ORIGINS_VAR).unwrap_or(""))?;
    let db = Db::connect(&ctx).await?;
    let outbox = tern_events::outbox(&ctx, &db).await?;
    let app = App {
        db,
        outbox,
        csrf: Csrf::new(&secret, secure_cookie, origins),
    };
    Ok(Router::new()
        .route("/", get(home))
        .route("/orders", post(create))
        .route("/orders/{id}", get(order))
        .route("/lookup", get(lookup))
        .route("/static/{file}", get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app))
}

/// Every page: a CSP without inline script or style, no sniffing, no framing, and a referrer only
/// to our own origin (the order page's address is the tracking link: it must not leak to other
/// sites; `no-referrer` would also make browsers send `Origin: null` on the form post).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The home page, with a CSRF cookie when the browser has none yet.
fn home_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    values: &FormValues,
    errors: &[String],
    lookup_error: Option<&str>,
) -> Response {
    let (cookie, set) = match Csrf::cookie(headers) {
        Some(c) => (c, None),
        None => {
            let (c, h) = app.csrf.new_cookie();
            (c, Some(h))
        }
    };
    let mut res = (
        status,
        Html(pages::home(
            &app.csrf.token(&cookie),
            values,
            errors,
            lookup_error,
        )),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = set.and_then(|s| HeaderValue::from_str(&s).ok()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    home_page(
        &app,
        &headers,
        StatusCode::OK,
        &FormValues::default(),
        &[],
        None,
    )
}

async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let field = |k: &str| form.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    if let Err(refusal) = app.csrf.verify(&headers, &field("csrf")) {
        tracing::warn!(
            reason = refusal.reason(),
            "form post refused: CSRF check failed"
        );
        return Ok((StatusCode::FORBIDDEN, Html(pages::forbidden())).into_response());
    }
    let mut values = FormValues {
        email: field("customer_email"),
        currency: field("currency"),
        lines: Vec::new(),
    };
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for i in 0..LINES {
        let (sku, qty, price) = (
            field(&format!("sku_{i}")),
            field(&format!("quantity_{i}")),
            field(&format!("price_{i}")),
        );
        values.lines.push((sku.clone(), qty.clone(), price.clone()));
        if sku.is_empty() && qty.is_empty() && price.is_empty() {
            continue;
        }
        let quantity = qty.parse::<u32>().ok();
        // ISO 4217 minor units decide the decimals: 12.50 EUR, 1250 JPY, 12.500 KWD. An unknown
        // currency is reported once by the order's own validation.
        let currency = if currency::is_iso4217(&values.currency) {
            values.currency.as_str()
        } else {
            "EUR"
        };
        let cents = currency::parse(&price, currency);
        if quantity.is_none() {
            errors.push(format!("Item {}: quantity must be a whole number.", i + 1));
        }
        if cents.is_none() {
            errors.push(format!(
                "Item {}: unit price must look like {} in {currency}.",
                i + 1,
                currency::example(currency)
            ));
        }
        if let (Some(quantity), Some(unit_price_cents)) = (quantity, cents) {
            items.push(NewItem {
                sku,
                quantity,
                unit_price_cents,
            });
        }
    }
    let new = NewOrder {
        customer_email: values.email.clone(),
        currency: values.currency.clone(),
        items,
    };
    let total = match (errors.is_empty(), new.validate()) {
        (true, Ok(total)) => total,
        (_, result) => {
            if let Err(OrderError::Invalid(violations)) = result {
                errors.extend(
                    violations
                        .iter()
                        .map(|v| format!("{}: {}", v.pointer, v.detail)),
                );
            }
            return Ok(home_page(
                &app,
                &headers,
                StatusCode::UNPROCESSABLE_ENTITY,
                &values,
                &errors,
                None,
            ));
        }
    };
    let created = app
        .outbox
        .write(async |tx| repo::create(tx, &new, total, None).await)
        .await?;
    tracing::info!(order_id = %created.order.id, "order created from the web form");
    Ok(Redirect::to(&format!("/orders/{}", created.order.id)).into_response())
}

async fn order(State(app): State<App>, Path(id): Path<String>) -> Result<Response, Problem> {
    let not_found = || (StatusCode::NOT_FOUND, Html(pages::not_found(&id))).into_response();
    if !is_order_id(&id) {
        return Ok(not_found());
    }
    let client = app.db.read().await?;
    let Some(order) = repo::get(&*client, &id).await? else {
        return Ok(not_found());
    };
    let mut res = Html(pages::order(&order)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn lookup(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = q.get("id").map(|s| s.trim()).unwrap_or_default();
    if is_order_id(id) {
        return Redirect::to(&format!("/orders/{id}")).into_response();
    }
    home_page(
        &app,
        &headers,
        StatusCode::BAD_REQUEST,
        &FormValues::default(),
        &[],
        Some("An order id looks like ord_ followed by 26 letters and digits."),
    )
}

async fn stylesheet(Path(file): Path<String>) -> Response {
    if file != "tern.css" {
        return Problem::not_found(format!("no static file {file}")).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
        .into_response()
}
