use super::{Ctx, Format};
use crate::layers::images::resolve;
use crate::util::{human_ago, human_size, parse_rfc3339};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub list: super::ListFlags,
    /// Image name or id
    pub image: String,
}

struct Row {
    id: String,
    created: Option<String>,
    created_by: String,
    size: u64,
    comment: String,
    empty_layer: bool,
}

pub fn run(ctx: &Ctx, args: HistoryArgs) -> Result<i32> {
    let flags = args.list;
    let store = ctx.store()?;
    let img = resolve(&store, &args.image)?;
    let layer_size = |i: usize| img.chain_ids.get(i).and_then(|c| store.layer_info(c)).map(|l| l.size).unwrap_or(0);
    let mut rows = Vec::new();
    let mut layer = 0;
    for h in img.config.history() {
        let empty_layer = h.empty_layer().unwrap_or(false);
        let size = if empty_layer { 0 } else { layer_size(layer) };
        if !empty_layer {
            layer += 1;
        }
        rows.push(Row {
            id: "<missing>".into(),
            created: h.created().clone(),
            created_by: h.created_by().clone().unwrap_or_default(),
            size,
            comment: h.comment().clone().unwrap_or_default(),
            empty_layer,
        });
    }
    // Layers the history does not account for (an image without history, say).
    for i in layer..img.chain_ids.len() {
        let r = Row {
            id: "<missing>".into(),
            created: None,
            created_by: String::new(),
            size: layer_size(i),
            comment: String::new(),
            empty_layer: false,
        };
        rows.push(r);
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = if flags.no_trunc || flags.format == Format::Json {
            img.id().to_string()
        } else {
            img.short_id().to_string()
        };
    }
    if flags.quiet {
        for r in &rows {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    if flags.format == Format::Json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "ID": r.id, "Created": r.created, "CreatedBy": r.created_by, "Size": r.size,
                    "Comment": r.comment, "EmptyLayer": r.empty_layer,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let mut table = vec![["IMAGE".to_string(), "CREATED".into(), "CREATED BY".into(), "SIZE".into(), "COMMENT".into()]];
    for r in &rows {
        let created = r.created.as_deref().and_then(parse_rfc3339).map(human_ago).unwrap_or_default();
        let by = r.created_by.replace(['\t', '\n'], " ");
        let by = if flags.no_trunc { by } else { ellipsis(&by, 45) };
        table.push([r.id.clone(), created, by, human_size(r.size), r.comment.clone()]);
    }
    super::images::print_table(&table);
    Ok(0)
}

/// Cuts `s` to `width` characters, the last one an ellipsis, as Docker's tables do.
fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}
