bucket = "tern-tfstate"
prefix = "bootstrap"
