bucket = "tern-tfstate"
prefix = "envs/staging"
