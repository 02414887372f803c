//! `snctl models [CODE] [--declare ...]`: the models and their serial schemes.

use serde_json::{json, Value};

use crate::api::Api;
use crate::args::ModelsArgs;
use crate::error::Error;
use crate::output::Output;
use crate::render;

pub async fn run(api: &Api, out: Output, args: ModelsArgs) -> Result<(), Error> {
    let reply = match (&args.code, args.declare) {
        (Some(code), true) => {
            let mut scheme = json!({});
            if let Some(w) = args.width {
                scheme["width"] = json!(w);
            }
            if let Some(c) = args.check_digit {
                scheme["check_digit"] = json!(c.as_str());
            }
            api.declare(code, &scheme).await?
        }
        (code, _) => api.models(code.as_deref()).await?,
    };
    out.view(&reply, || {
        match reply.get("models").and_then(Value::as_array) {
            Some(models) => render::models(models),
            None => render::model(&reply),
        }
    })
}
