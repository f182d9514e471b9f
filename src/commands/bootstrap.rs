//! `vigie bootstrap`: prepares a registry for the services, idempotently. Trains every model
//! spec that has no production version yet and creates the first admin when there is no
//! account. docker-compose.yml runs it once before the services start; running it again
//! changes nothing.

use std::path::PathBuf;

use vigie_registry::{Role, User};

use crate::Cli;
use crate::commands::required;
use crate::commands::up::ensure_models;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model specs to train when the registry has no production version of them.
    #[arg(long, env = "VIGIE_MODELS_DIR", default_value = "models")]
    models_dir: PathBuf,
    /// Name of the first admin, created when the registry has no account.
    #[arg(long, env = "VIGIE_ADMIN", default_value = "admin")]
    admin: String,
    /// The first admin's password (only read when the registry has no account).
    #[arg(long, env = "VIGIE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    vigie_registry::users::check_user_name(&args.admin)
        .map_err(|m| anyhow::anyhow!("VIGIE_ADMIN: invalid user name {:?}: {m}", args.admin))?;
    let registry = cli.registry().await?;
    ensure_models(&registry, &args.models_dir).await?;
    for version in registry.production().await? {
        println!("production: {}", version.id());
    }

    if registry.users().await?.is_empty() {
        let password = required(
            args.admin_password.as_deref(),
            "VIGIE_ADMIN_PASSWORD: the registry has no account yet; set the first admin's password",
        )?
        .to_string();
        vigie_api::auth::check_password(&password, &args.admin)
            .map_err(|m| anyhow::anyhow!("VIGIE_ADMIN_PASSWORD refused: {m}"))?;
        let hash = tokio::task::spawn_blocking(move || vigie_api::auth::hash_password(&password))
            .await?
            .map_err(anyhow::Error::msg)?;
        registry
            .add_user(&User {
                name: args.admin.clone(),
                role: Role::Admin,
                password_hash: hash,
                created_at: chrono::Utc::now().timestamp(),
                created_by: "vigie-bootstrap".into(),
            })
            .await?;
        println!("created the first admin: {}", args.admin);
    } else {
        println!("accounts: present (none created)");
    }
    registry.close().await;
    Ok(())
}
