bucket = "tern-tfstate"
prefix = "envs/prod"
