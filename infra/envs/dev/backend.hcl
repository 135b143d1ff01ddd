bucket = "tern-tfstate"
prefix = "envs/dev"
