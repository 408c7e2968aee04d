//! `dripline token`: the admin API's tokens, kept hashed beside the
//! database (see `dripline_admin::auth`).

use std::path::Path;

use anyhow::anyhow;
use dripline_admin::auth::{self, Role, TOKENS_FILE};

use crate::cli::TokenAction;

/// Carries out `action` on the tokens of the data directory `data`.
pub fn run(data: &Path, action: TokenAction) -> anyhow::Result<()> {
    let path = data.join(TOKENS_FILE);
    match action {
        TokenAction::New { name, role } => {
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .map_err(|_| {
                    anyhow!("--role: {role:?} is not a role (marketing, operations, engineering)")
                })?;
            if name.trim().is_empty() {
                return Err(anyhow!("--name: empty"));
            }
            let (token, stored) = auth::new_token(&name, role).map_err(|e| anyhow!(e))?;
            auth::add_to_file(&path, stored).map_err(|e| anyhow!(e))?;
            eprintln!(
                "token {name:?} ({role:?}) added to {}; it is shown this once:",
                path.display()
            );
            println!("{token}");
        }
        TokenAction::List => {
            for token in auth::read_tokens(&path).map_err(|e| anyhow!(e))? {
                let role = serde_json::to_value(token.role)?;
                println!("{}\t{}", token.name, role.as_str().unwrap_or_default());
            }
        }
        TokenAction::Revoke { name } => {
            if !auth::revoke_in_file(&path, &name).map_err(|e| anyhow!(e))? {
                return Err(anyhow!("no token named {name:?} in {}", path.display()));
            }
            eprintln!("token {name:?} revoked");
        }
    }
    Ok(())
}
