//! `vigie users`: accounts of the HTTP services, managed on the registry database directly
//! (how the first admin is made; later ones can also be made over the API).

use std::io::BufRead;

use anyhow::Context;
use vigie_registry::{Role, User};

use crate::Cli;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add an account. The password is read from stdin with --password-stdin, else from
    /// VIGIE_PASSWORD, else asked for on the terminal.
    Add {
        name: String,
        /// Make it an admin (manages accounts, noise injection, promotions).
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts.
    List,
    /// Delete an account (not the last admin).
    Delete { name: String },
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if let Ok(p) = std::env::var("VIGIE_PASSWORD") {
        return Ok(p);
    }
    let first = rpassword::prompt_password("Password: ")
        .context("no terminal to ask for a password: use --password-stdin or set VIGIE_PASSWORD")?;
    let second = rpassword::prompt_password("Again: ")?;
    if first != second {
        anyhow::bail!("the two passwords differ");
    }
    Ok(first)
}

pub async fn run(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    // Check what can be checked before asking for a password.
    if let Command::Add { name, .. } = command {
        vigie_registry::users::check_user_name(name)
            .map_err(|m| anyhow::anyhow!("invalid user name {name:?}: {m}"))?;
    }
    let registry = cli.registry().await?;
    match command {
        Command::Add {
            name,
            admin,
            password_stdin,
        } => {
            let password = read_password(*password_stdin)?;
            vigie_api::auth::check_password(&password, name)
                .map_err(|m| anyhow::anyhow!("password refused: {m}"))?;
            let hash =
                tokio::task::spawn_blocking(move || vigie_api::auth::hash_password(&password))
                    .await?
                    .map_err(anyhow::Error::msg)?;
            let role = if *admin { Role::Admin } else { Role::User };
            registry
                .add_user(&User {
                    name: name.clone(),
                    role,
                    password_hash: hash,
                    created_at: chrono::Utc::now().timestamp(),
                    created_by: "cli".into(),
                })
                .await?;
            println!("Added {name} ({})", role.as_str());
        }
        Command::List => {
            let users = registry.users().await?;
            if users.is_empty() {
                println!("No account yet: `vigie users add NAME --admin` makes the first admin.");
            }
            for u in users {
                let created = chrono::DateTime::from_timestamp(u.created_at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<6} created {created} by {}",
                    u.name,
                    u.role.as_str(),
                    u.created_by
                );
            }
        }
        Command::Delete { name } => {
            let user = registry.delete_user(name).await?;
            println!("Deleted {} ({})", user.name, user.role.as_str());
        }
    }
    registry.close().await;
    Ok(())
}
