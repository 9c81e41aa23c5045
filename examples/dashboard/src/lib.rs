//! A live dashboard: a figure kept in storage, set with
//! `POST /api/figure` (`{"value": <number>}`), and pushed every second by a
//! timer to every listener on `/ws/dashboard`, which also gets the figure
//! as it opens. The page is `/dashboard.html`.

use std::time::Duration;

use tina4_guest::prelude::*;
use tina4_guest::storage;

/// Where the figure is kept.
const FIGURE: &str = "figure";

fn routes(app: &mut Router) {
    app.websocket("/ws/dashboard", listen);
    app.get("/api/figure", |_: &Request| -> Result<Response, Error> {
        Ok(Response::json(&json!({ "value": figure()? })))
    });
    app.post("/api/figure", set_figure);
    app.every("publish", Duration::from_secs(1), Every::Period, publish);
}

tina4_guest::app!(routes);

/// The figure now (0 until one is set).
fn figure() -> Result<Value, Error> {
    Ok(storage::get_json::<Value>(FIGURE)?.unwrap_or(json!(0)))
}

fn listen(conn: &Connection, event: Event) -> Result<(), Error> {
    match event {
        Event::Open => conn.send_json(&json!({ "figure": figure()?, "tick": 0 })),
        _ => Ok(()),
    }
}

fn set_figure(req: &Request) -> Result<Response, Error> {
    let body: Value = req.json()?;
    let value = &body["value"];
    if !value.is_number() {
        return Err(Error::bad_request("value must be a number"));
    }
    storage::set_json(FIGURE, value)?;
    Ok(Response::json(&json!({ "value": value })))
}

/// Every second: the figure, to every listener.
fn publish(tick: u64) -> Result<(), Error> {
    let message = json!({ "figure": figure()?, "tick": tick }).to_string();
    push_to_websocket("/ws/dashboard", &message).map(drop)
}
